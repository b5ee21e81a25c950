from oms_platform.runtime import serve
from tracking.bootstrap import build_app
from tracking.settings import Settings

settings = Settings()
serve(build_app(settings), settings)
