"""The designer's studio: the /designer page and its access rules, previews with
diagnostics, live reload, test sends."""
