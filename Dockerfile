# imagechat-mcp on stdio: docker run -i --rm -e OPENAI_API_KEY imagechat-mcp
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY server ./server
COPY tools ./tools
COPY prompts ./prompts
RUN pip install . && useradd --create-home --uid 10001 imagechat \
    && mkdir -p /images && chown imagechat /images

USER imagechat
# Mount pictures at /images (docker run -v "$HOME/Pictures:/images:ro" ...); state lives in the user's home.
ENV IMAGECHAT_ALLOWED_DIRS=/images
ENTRYPOINT ["imagechat-mcp"]
