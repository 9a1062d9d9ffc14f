from diffctl.cli import main

raise SystemExit(main())
