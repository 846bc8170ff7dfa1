"""What runs ON SageMaker (inference contract, model server) and how it gets there (packaging, deploy)."""
