"""The designer's studio: the /designer page, its access rules, previews and live reload."""
