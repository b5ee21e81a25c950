from __PKG__.bootstrap import build_app
from __PKG__.settings import Settings
from oms_platform.runtime import serve

settings = Settings()
serve(build_app(settings), settings)
