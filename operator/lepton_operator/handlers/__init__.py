"""Controllers: informer callbacks -> work queue -> observe, plan, apply, on one runtime (controller.py)."""
