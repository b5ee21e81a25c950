from oms_platform.runtime import serve
from returns.bootstrap import build_app
from returns.settings import Settings

settings = Settings()
serve(build_app(settings), settings)
