#!/bin/sh
cat /etc/message.txt
echo "running as uid $(id -u) on $(uname -s)"
