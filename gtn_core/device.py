"""Device selection: one place that turns "auto" into a real torch.device."""
import torch


def resolve_device(name: str = "auto") -> torch.device:
    """Return CUDA when available for "auto", else the named device; reject unknown names."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"device={name!r} is not a torch device; expected 'auto', 'cpu' or 'cuda[:N]'") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} requested but CUDA is not available; use device='auto' or 'cpu'")
    return device
