"""AWS's sample handler name, ``lambda_function.lambda_handler``, for stacks that keep it.

Copied to the root of the function package by the Makefile's build-RotationFunction target (not a
module of the installed ``rotation`` distribution). Importing it imports rotation.handler, which
on Lambda builds the app in the init phase, exactly as the handler name
``rotation.handler.lambda_handler`` does. docs/migration.md says when to switch to that name.
"""

from rotation.handler import lambda_handler as lambda_handler
