"""Carrier adapters shared by the services that send parcels (fulfilment) and have them sent back
(returns): the adapter interface, the built-in carrier with check-digit tracking numbers, and the PDF
label with the tracking number as a Code128 barcode."""
