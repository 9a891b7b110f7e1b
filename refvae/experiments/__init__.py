"""Reusable experiment procedures behind the verify claims and the theorem tests.

Each function trains or evaluates models with refvae on a benchmark and returns plain numbers;
``refvae.verify.claims`` turns them into reported claims and the test suite checks them.
"""
