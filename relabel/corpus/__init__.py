"""Reading documents: formats, metadata, encodings, and quarantine of what cannot be used."""
