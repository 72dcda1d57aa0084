"""The results document and every output made from it."""
