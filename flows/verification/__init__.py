"""Order verification: the pure flow, calling windows, its runtime, the call job, the IVR
script, the customer's keys and page."""
