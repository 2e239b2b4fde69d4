"""The JSON Schemas of each node type's config, one file per type; a package so they are found as
resources wherever the code is installed.
"""
