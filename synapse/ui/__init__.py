"""The operator page's files (index.html, app.js, style.css), served at /ui by synapse/api/ui.py."""
