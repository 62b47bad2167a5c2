from tests.integration.conftest import *  # noqa: F403 - the throwaway servers
