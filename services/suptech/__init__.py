"""suptech: supervisory-technology risk monitor for financial regulators.

This file ships with the institution SDK (suptech-sdk); the regulator's distribution (suptech)
adds its subpackages beside it. ``extend_path`` makes the package span every directory of
``sys.path`` holding a ``suptech/``, so the two installs (or an install and a source checkout)
make one package.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
