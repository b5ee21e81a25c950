"""__TITLE__ (generated from tools/service_template): replace this line with what the service does."""
