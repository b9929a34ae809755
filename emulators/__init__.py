"""Local, wire-compatible emulators (S3 via moto, Bedrock runtime for Marengo) and synthetic sample media.

An independent implementation of the documented service contract: nothing here imports production code.
"""
