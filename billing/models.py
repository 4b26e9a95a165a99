"""Models arrive with their issue; the app is installed so migrations and URLs have a home."""
