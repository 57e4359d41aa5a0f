"""Provider bridges: each folder holds one provider's config, pure parser and thin I/O."""
