"""Notification: customer emails over SMTP and signed webhooks to downstream systems, with retries and a delivery log"""
