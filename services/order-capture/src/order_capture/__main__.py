from oms_platform.runtime import serve
from order_capture.bootstrap import build_app
from order_capture.settings import Settings

settings = Settings()
serve(build_app(settings), settings)
