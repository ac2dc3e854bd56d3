"""Scale-out backends. Only this package imports ray (the optional ``ray`` extra)."""
