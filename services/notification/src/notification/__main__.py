from notification.bootstrap import build_app
from notification.settings import Settings
from oms_platform.runtime import serve

settings = Settings()
serve(build_app(settings), settings)
