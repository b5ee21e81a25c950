"""Tracking: order timelines, signed carrier scans, live status for channels and customers"""
