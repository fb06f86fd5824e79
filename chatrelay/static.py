"""Files the relay serves from the package: the browser client module, and the demo's page."""

from importlib import resources

from chatrelay.http import Response

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".json": "application/json",
}
CLIENT_MODULE = "chatrelay-client.js"


def web_file(relative):
    """The package's web/<relative> file."""
    return resources.files("chatrelay").joinpath("web", *relative.split("/"))


def file_handler(relative):
    """A route handler serving web/<relative>."""
    suffix = "." + relative.rsplit(".", 1)[-1]

    def serve(request):
        return Response(200, web_file(relative).read_bytes(), CONTENT_TYPES.get(suffix, "application/octet-stream"))

    return serve


def install_static(routes):
    """Serve the client module at /chatrelay-client.js (under any prefix)."""
    routes.add("/" + CLIENT_MODULE, file_handler(CLIENT_MODULE))
