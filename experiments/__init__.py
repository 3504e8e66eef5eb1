"""Sacred experiments around gtn_core, and the study runner."""
import warnings

# Sacred 0.8.7 imports pkg_resources, which setuptools deprecates loudly; the pinned setuptools keeps it working.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
