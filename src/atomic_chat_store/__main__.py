"""``python -m atomic_chat_store``: the ``atomic-chat-store`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
