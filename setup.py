"""Packaging for chatrelay, a WebSocket relay from browsers to Binance's C2C chat."""

from setuptools import find_packages, setup

setup(
    name="chatrelay",
    version="0.1.0",
    description="WebSocket relay joining each browser to its own Binance C2C chat connection",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["chatrelay", "chatrelay.*"]) + ["twisted.plugins"],
    package_data={"chatrelay": ["web/*.js", "web/demo/*"]},
    install_requires=[
        "twisted[tls]>=26.10.0",
        # sendCloseFrame and the close-code allow-list are semi-internal: pin the minor.
        "autobahn>=26.10.2,<26.11",
        "txaio>=26.6.1",
        "service-identity>=21.1",
        "pyopenssl>=25.3",
        "prometheus_client>=0.20",
    ],
    extras_require={
        "test": [
            "twisted[test]",  # tests/test_reactor.py runs Twisted's own reactor suites
            "pytest>=9",
            "pytest-twisted>=1.14.3",
            "pytest-timeout",
            "cryptography",
            # The browser tests drive Debian's chromium; never `playwright install`.
            "playwright==1.65.2",
        ],
    },
)
