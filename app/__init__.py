"""The mixplan Streamlit app. Layout and widgets only: every number comes from ``engine``."""
