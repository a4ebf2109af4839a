"""The product listing: SQL building (sql), cursor keys (cursors), keyset pages (keyset) and
ranked search (ranked_search). app.services.product_queries is its entry point."""
