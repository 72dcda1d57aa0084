from reference_app.cli import main

raise SystemExit(main())
