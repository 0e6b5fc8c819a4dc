"""The kernel ``biaskit figures`` starts for each notebook: ipykernel without its warning that
the kernel runs over TCP without encryption (papermill's kernels listen on localhost for the one
process that started them; the warning would be printed once per notebook)."""

import logging


class _NoUnencryptedWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "without encryption" not in record.getMessage()


def main():
    from ipykernel.kernelapp import IPKernelApp
    logging.getLogger(IPKernelApp.__name__).addFilter(_NoUnencryptedWarning())
    IPKernelApp.launch_instance()


if __name__ == "__main__":
    main()
