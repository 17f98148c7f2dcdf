"""The example's one app: products, a cached product card, invalidation from signals."""
