"""Linear probes on frozen audio embeddings (AcuLa / OPERA protocol): `clinlm probe`."""
