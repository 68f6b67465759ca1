class OptionalModels:
    @classmethod
    def load(cls, config):
        return None
