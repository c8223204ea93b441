"""Generated from protos/suptech/v1 by scripts/gen_protos.sh; do not edit."""
