"""The designer's studio: the page, its live reload, previews and test sends."""
