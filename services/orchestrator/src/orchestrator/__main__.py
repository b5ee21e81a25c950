from oms_platform.runtime import serve
from orchestrator.bootstrap import build_app
from orchestrator.settings import Settings

settings = Settings()
serve(build_app(settings), settings)
