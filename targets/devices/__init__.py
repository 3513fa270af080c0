"""Device catalog (FPGA boards now, mobile GPUs next): every figure with the document it comes from."""

from targets.devices.catalog import (
    Catalog,
    CatalogError,
    FpgaBoard,
    Published,
    Sourced,
    board,
    get,
    load,
    load_published,
)

__all__ = ["Catalog", "CatalogError", "FpgaBoard", "Published", "Sourced", "board", "get", "load", "load_published"]
