from pyrogen._entry import main

raise SystemExit(main())
