"""Hybrid Lambda / SageMaker inference router.

Importing this package is cheap on purpose (Lambda cold start): no boto3, numpy or sklearn here.
"""

__version__ = "0.1.0"
