"""``python -m speechbrain_ext.quant {pack,errors}``."""

from speechbrain_ext.quant.cli import main

if __name__ == "__main__":
    main()
