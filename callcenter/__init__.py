"""callcenter: an on-premises intelligent call center for car dealerships."""

__version__ = "0.1.0"
