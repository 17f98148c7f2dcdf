"""The fault suite: worker processes keep calling while one fault at a time is injected."""
