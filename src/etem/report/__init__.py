"""The campaign report (``etem report``): one self-contained HTML file."""
