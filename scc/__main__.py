from scc.cli import main

raise SystemExit(main())
