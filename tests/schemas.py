"""Official XML schemas for the export tests, read from installed packages (never the network).

ALTO 4.4 (the Library of Congress schema) ships inside the `htrflow` wheel; it imports the METS
XLink schema from loc.gov, which ships inside `ocrd_validators`. `scripts/setup.sh` installs both
without their dependencies: only their schema files are used, and neither package is imported.
"""

from importlib.metadata import PackageNotFoundError, distribution

from lxml import etree

ALTO_XSD = ("htrflow", "htrflow/serialization/schemas/alto-4-4.xsd")
XLINK_XSD = ("ocrd_validators", "ocrd_validators/xlink.xsd")
XLINK_URL = "http://www.loc.gov/standards/xlink/xlink.xsd"


def _path(dist: str, rel: str) -> str:
    try:
        path = distribution(dist).locate_file(rel)
    except PackageNotFoundError:
        path = None
    if path is None or not path.exists():
        raise RuntimeError(f"{rel} not found: run scripts/setup.sh (it installs {dist} for its schema)")
    return str(path)


class _Local(etree.Resolver):
    def __init__(self, urls: dict[str, str]):
        super().__init__()
        self.urls = urls

    def resolve(self, url, pubid, context):
        return self.resolve_filename(self.urls[url], context) if url in self.urls else None


def alto_schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_Local({XLINK_URL: _path(*XLINK_XSD)}))
    return etree.XMLSchema(etree.parse(_path(*ALTO_XSD), parser))
