"""The project's one error hierarchy.

Every failure a person or Airflow has to act on is a :class:`PipelineError`, and its message is
one line that says what was wrong and where (key, file, table, column, endpoint), never a
password. Two kinds, because they call for opposite reactions:

- :class:`DeterministicError`: bad data, a violated contract, a bad setting, a refused model.
  Running again changes nothing, so Airflow fails the task at once and the CLI exits with 2.
- :class:`TransientError`: a database, object store or Spark endpoint that does not answer, a
  lock held by another run, an upstream date that is not published yet. Airflow retries these
  with exponential back-off; the last try fails with the same one-line message.

The base classes keep ``ValueError`` / ``RuntimeError`` where callers relied on them.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Any failure the pipeline reports as a one-line message (the CLI catches only these)."""


class DeterministicError(PipelineError):
    """A failure a retry cannot fix: fail at once."""


class TransientError(PipelineError):
    """A failure a later try may not meet: retried with back-off."""


# Deterministic ------------------------------------------------------------------------------


class ConfigError(DeterministicError, ValueError):
    """A setting, argument or input file is missing or wrong; the message names the key or file."""


class InputFileError(DeterministicError, ValueError):
    """A file handed to a command cannot be used; the message names the file (and line or column)."""


class ContractError(DeterministicError, ValueError):
    """A data contract file is malformed or uses something the compiler does not support."""


class ContractViolation(DeterministicError, RuntimeError):
    """An error-level expectation failed: nothing downstream may be published for the date."""


class ReconciliationError(DeterministicError, RuntimeError):
    """A stage's counts do not add up (input != clean + quarantined + duplicates)."""


class NotValidatedError(DeterministicError, RuntimeError):
    """The date has no passing validation of exactly the data about to be published."""


class SchemaDriftError(DeterministicError, RuntimeError):
    """A source table lost or renamed a column the pipeline reads."""


class ModelGateError(DeterministicError, RuntimeError):
    """The candidate model did not pass the quality gate; the live lists stay as they are."""


class DeadlineMissedError(DeterministicError, RuntimeError):
    """A night's chain was not finished by ``alerts.finish_by``; the message lists what is missing."""


class StaleDataError(DeterministicError, RuntimeError):
    """Published tables are older than the night that is due; the message lists them."""


class PublishMismatchError(DeterministicError, RuntimeError):
    """What a write left in the warehouse or lake is not what was staged (rows lost or added);
    the write was rolled back (warehouse) or the stage failed before reporting success (lake)."""


class BudgetExceededError(DeterministicError, RuntimeError):
    """A bounded computation would pass, or passed, its configured size or time budget; the
    message names the setting."""


class HashKeyMismatchError(DeterministicError, RuntimeError):
    """The PII hashing key differs from the one the warehouse's hashes were made with."""


# Transient ----------------------------------------------------------------------------------


class EndpointUnavailableError(TransientError, ConnectionError):
    """A database, object store or Spark endpoint did not answer."""


class UpstreamNotReadyError(TransientError, RuntimeError):
    """An input date is not published yet (still running, failed, or never run)."""


class LockHeldError(TransientError, RuntimeError):
    """Another run holds the warehouse lock for this date range."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's text, cut to ``limit`` characters (drivers and the JVM
    put whole stacks in their messages)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]
