"""The REST resources (falcon ``on_get``/``on_post``...): one module per group of endpoints.

``base`` holds what they share (the request context, reading and answering);
``market`` the public market-data endpoints, ``orders`` the signed order
endpoints, ``admin`` user creation and ``health`` the health check.
"""
