from pyrogen.cli import main

raise SystemExit(main())
