"""Click commands, one module per `selfinstruct` subcommand; the logic lives in the stage modules."""
